// epoll/registry.hpp (internal) — the process's epoll sets: which number
// names which set, which sets hold which fd, the nesting graph, and the
// bookkeeping of close, dup and fork (registry.cpp). See set.hpp for the
// locking order.
#pragma once

#include <sys/stat.h>

#include <atomic>
#include <memory>
#include <mutex>

#include "set.hpp"

#include "ueq/runtime/lock.hpp"

namespace ueq::epoll_internal {

// The registry of sets, owned by the process and never freed (close
// callbacks may run during exit). Guarded by mu.
struct registry {
  os_mutex mu{lock_level::epoll_registry};
  absl::flat_hash_map<int, std::shared_ptr<epoll_set>> by_fd ABSL_GUARDED_BY(mu);  // epoll fds
  // Incremented after every change of by_fd (under mu): lookup()'s
  // per-thread answer holds while it has not moved.
  std::atomic<std::uint64_t> by_fd_gen{0};
  absl::flat_hash_map<int, absl::flat_hash_set<epoll_set::impl*>> members  // by target fd
      ABSL_GUARDED_BY(mu);
  // The nesting graph: parent set -> child set -> number of entries.
  absl::flat_hash_map<epoll_set::impl*, absl::flat_hash_map<epoll_set::impl*, int>> children
      ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<epoll_set::impl*, absl::flat_hash_map<epoll_set::impl*, int>> parents
      ABSL_GUARDED_BY(mu);
  // Live sets whose epoll fd watches the host poller's fd.
  int host_watchers ABSL_GUARDED_BY(mu) = 0;
  // An epoll fd not of ours (a raw set, or one handed to the kernel at a
  // fork) has been registered with the host poller: no set watches the
  // host from then on (end_host_watches).
  bool host_holds_epoll ABSL_GUARDED_BY(mu) = false;
  // The identity set: a kernel epoll fd (hidden, never waited on, one per
  // process: a fork()ed child makes its own) holding (number, file) for
  // every file that an entry of one of our sets was added for, while a set
  // holds that number. Linux keys its entries by the same pair, so the
  // kernel answers "does this number still name the file the entries are
  // for?" in one epoll_ctl (see identity_probe). -1 until first needed, or
  // when it could not be made (then every check takes the slow path).
  // Written under mu; read without it (the probe).
  std::atomic<int> ident{-1};
  // Odd while an ADD registers a pair and drops the stale entries under its
  // number (under mu): a MOD's probe that succeeds meanwhile may have found
  // the new pair while this set still holds a stale entry, so it takes the
  // full path (impl::modify_registered; tests/model/identity.pml). Written
  // under mu, read without it.
  std::atomic<std::uint64_t> identity_seq{0};
};
registry& reg();

using impl = epoll_set::impl;

// The tap service, with the facade's close callback registered on it.
result<tap_service*> service();

// The nesting graph (under reg().mu): the longest chain of sets below c
// (INT_MAX if `target` is among them: a cycle), and above p.
int depth_below(impl* c, const impl* target, int level = 0) ABSL_EXCLUSIVE_LOCKS_REQUIRED(reg().mu);
int depth_above(impl* p, int level = 0) ABSL_EXCLUSIVE_LOCKS_REQUIRED(reg().mu);
void add_edge(impl* parent, impl* child) ABSL_EXCLUSIVE_LOCKS_REQUIRED(reg().mu);
void remove_edge(impl* parent, impl* child) ABSL_EXCLUSIVE_LOCKS_REQUIRED(reg().mu);

// The set an fd number is recorded as (no kernel check), or null.
std::shared_ptr<epoll_set> lookup(int fd);
// After a change of by_fd (under reg().mu): cached lookups are stale.
void bump_numbers();
// The same, checked with the kernel (a stale record is forgotten); null
// for a native set unless with_native.
std::shared_ptr<epoll_set> lookup_live(int fd, bool with_native = false);
// Drops what ueq knew of a number whose file was closed behind its back
// (every set, entry and tap under it: the kernel has just handed it out).
void forget_number(int fd);
// What a close of fd through ueq does before the kernel's close (the
// registrations of fd, and fd's set if it names one, are dropped), for a
// caller that makes that close itself: the preload library's close(), so
// that its kernel close stays a cancellation point, as the C library's.
void forget_before_close(int fd);
// Drops the record of set `expected` under `fd`, if it is still there (the
// number no longer names it).
void forget_set_number(int fd, const impl* expected);

bool fd_open(int fd);
// The number as the program's: -1 for one of ueq's own descriptors, which
// the kernel then answers for as a number the program never opened.
inline int program_fd(int fd) {
  return is_own_fd(fd) ? -1 : fd;
}
// An open fd that is not O_PATH (what epoll calls accept as a file).
bool fd_usable(int fd);
// Whether Linux's epoll would accept the file (the kernel is asked).
bool pollable(int fd, const struct stat& st);
// Whether fd is an epoll fd (ours or not): for an anonymous-inode file, the
// kernel is asked (under reg().mu).
bool is_epoll_file(int fd, const struct stat& st) ABSL_EXCLUSIVE_LOCKS_REQUIRED(reg().mu);
// Whether entry e, held under number fd, is for a file closed behind ueq's
// back (st: what fd names now): asked of the identity set where e was
// registered there, else by inode, and for an epoll fd's entry also by
// kind (every anonymous-inode file shares one inode). Under reg().mu.
bool is_stale(const impl::entry& e, int fd, const struct stat& st)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(reg().mu);

// The identity set (registry::ident). Under reg().mu, adds (fd, the file
// fd names now) to it: 0 if the pair was not there, so that every entry any
// set holds under fd was for a file since closed behind ueq's back
// (drop_entries_of them); EEXIST if it was there already; another errno if
// it cannot be registered.
int register_identity(int fd) ABSL_EXCLUSIVE_LOCKS_REQUIRED(reg().mu);
// Whether (fd, the file it names now) is in the identity set: an entry
// that was identified there is for that file exactly when it is.
bool identity_registered(int fd);
// Ends fd's identity registration once no set holds an entry under it
// (under reg().mu).
void release_identity_if_unused(int fd) ABSL_EXCLUSIVE_LOCKS_REQUIRED(reg().mu);
// The fast MOD's question: 0 if (fd, the file it names now) is registered
// (the kernel read the event: it is readable, and `copy` holds it), else
// the errno of the kernel's answer (EFAULT for an unreadable event;
// ENOENT, EBADF, EINVAL and others send the caller down the full path).
// No lock.
int identity_probe(int fd, const epoll_event* event, epoll_event& copy);
// Every entry under fd leaves the set that holds it (under reg().mu only);
// see remove_entry for release.
void drop_entries_of(int fd, bool release = true) ABSL_EXCLUSIVE_LOCKS_REQUIRED(reg().mu);

// Removes one entry of s (under reg().mu and s.mu). With release, a file's
// identity pair goes too once no set holds the number; an ADD that
// registers the number's new file removes stale entries without it.
void remove_entry(impl& s, absl::node_hash_map<int, impl::entry>::iterator it, bool release = true)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(reg().mu, s.mu);
// Ends s's watch of the host poller's fd, if any (under reg().mu); the
// kernel is told only while s's number still names its file (`live`).
void unwatch_host(impl& s, bool live = true) ABSL_EXCLUSIVE_LOCKS_REQUIRED(reg().mu);
// Before the host poller holds an epoll fd not of ours: every set's watch
// of the host ends, and no later set starts one. That epoll fd may hold a
// watching set's epoll fd (or come to), and the kernel would see the path
// host poller -> that epoll fd -> the set's -> host poller as a cycle
// (ELOOP) where the program's sets make none (under reg().mu).
void end_host_watches() ABSL_EXCLUSIVE_LOCKS_REQUIRED(reg().mu);
// A wait about to sleep in s counts itself in (false, and not counted, if
// s's last number is closed: the wait then fails with EBADF), and out when
// it returns; the last one out of a set whose last number was closed
// meanwhile tears it down (set.hpp, at `sleepers`). Without reg().mu or
// s.mu.
bool enter_wait(impl& s);
void leave_wait(impl& s);

// The close callback: fd leaves every set, an epoll fd's number its set.
void on_fd_close(int fd, void*);

// Test-only: called by the fork's hand-over of the sets (materialize_all)
// after every entry is copied into the kernel and before the last step, so
// a test can change an entry exactly there. Never set outside tests.
inline std::atomic<void (*)()> test_hook_in_handover{nullptr};
// Before a call that starts a new program (the preload library's exec
// family, posix_spawn, system, popen, vfork): if the new program can
// inherit a set (a number without FD_CLOEXEC, asked of the kernel, that
// still names it), every set is handed to the kernel as at fork()
// (materialize_all), so the new program finds the set's entries, with
// their data, in the epoll fd it inherits and nothing of ueq's own; they
// stay the kernel's if this process goes on, as after a fork (a kernel set
// cannot hold ueq's, so all go together). Nothing is done, with no lock and no
// system call, until g_maybe_inheritable is set; nor in a process made
// without fork handlers (a vfork() child: its parent's memory).
void hand_over_before_exec() noexcept;
// Set for good once a number of a set may lack FD_CLOEXEC: a set made
// without EPOLL_CLOEXEC, a duplicate of a set's number without the flag,
// an F_SETFD that clears it on an epoll fd (the preload library's fcntl).
// An ioctl(FIONCLEX) is not seen.
extern std::atomic<bool> g_maybe_inheritable;
// dup/dup2/dup3 bookkeeping: a new number for a set names it too.
void register_dup(int oldfd, int newfd);
int dup_over(int oldfd, int newfd, int flags, bool is_dup2);

}  // namespace ueq::epoll_internal
