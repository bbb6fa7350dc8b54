// The process's epoll sets (registry.hpp): numbers, membership, nesting,
// identity, close/dup bookkeeping and fork.
#include "registry.hpp"
#include "ueq/runtime/fd.hpp"
#include "ueq/runtime/fork.hpp"
#include "ueq/runtime/lock.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <functional>
#include <vector>

namespace ueq::epoll_internal {

registry& reg() {
  static registry* r = new registry;
  return *r;
}

os_mutex g_service_mu{lock_level::epoll_service};
tap_service* g_registered ABSL_GUARDED_BY(g_service_mu) = nullptr;

// The tap service, with our close callback registered on it (once per
// service: a fork()ed child gets a new one).
result<tap_service*> service() {
  auto s = tap_service::instance();
  if (!s) return s.error();
  lock_guard<os_mutex> g(g_service_mu);
  if (*s != g_registered) {
    (*s)->add_close_callback(&on_fd_close, nullptr);
    g_registered = *s;
  }
  return *s;
}

// Longest chain of sets below c (0 = holds none); INT_MAX if `target` is
// among them (a cycle). Under reg().mu.
int depth_below(impl* c, const impl* target, int level) {
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
int depth_above(impl* p, int level) {
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

namespace {
// A thread's last answer of lookup(): the number, by_fd_gen when it was
// given, and the set (weak: a set closed meanwhile is not kept alive).
// glibc destroys a thread's thread_local objects before its pthread_key
// destructors and, in the main thread, before atexit handlers and static
// destructors, any of which may still call epoll: tl_last_gone (trivially
// destructible, so still readable then) says the answer is gone.
thread_local bool tl_last_gone = false;
struct last_lookup {
  int fd = -1;
  std::uint64_t gen = 0;
  bool found = false;
  std::weak_ptr<epoll_set> set;
  ~last_lookup();
};
thread_local last_lookup tl_last;
last_lookup::~last_lookup() {
  if (this == &tl_last) tl_last_gone = true;
}
}  // namespace

void bump_numbers() {
  // release: pairs with lookup()'s acquire load; the change of by_fd before
  // it is what makes a cached answer stale.
  reg().by_fd_gen.fetch_add(1, std::memory_order_release);
}

// The C API asks this on every call, mostly for the same number: the
// thread's last answer is reused while no number has been bound or unbound
// since (no lock, no hash lookup). Only in the outermost scope: a signal
// handler that interrupts a lookup finds the thread inside ueq and neither
// reads nor writes the answer the interrupted code is using.
std::shared_ptr<epoll_set> lookup(int fd) {
  const bool outermost = !tap_service::inside_ueq::active() && !tl_last_gone;
  tap_service::inside_ueq in;
  if (outermost) {
    // acquire: pairs with bump_numbers(); an answer cached before a change
    // of by_fd is not used once the change is visible.
    const std::uint64_t gen = reg().by_fd_gen.load(std::memory_order_acquire);
    const last_lookup& last = tl_last;
    if (last.fd == fd && last.gen == gen) {
      if (!last.found) return nullptr;
      if (auto s = last.set.lock()) return s;
    }
  }
  lock_guard<os_mutex> g(reg().mu);
  auto it = reg().by_fd.find(fd);
  std::shared_ptr<epoll_set> s = it == reg().by_fd.end() ? nullptr : it->second;
  if (outermost) {
    last_lookup& last = tl_last;
    last.fd = fd;
    last.gen = reg().by_fd_gen.load(std::memory_order_relaxed);
    last.found = s != nullptr;
    last.set = s;
  }
  return s;
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
std::shared_ptr<epoll_set> lookup_live(int fd, bool with_native) {
  auto s = lookup(fd);
  if (!s) return nullptr;
  impl& p = epoll_access::of(*s);
  if (p.native.load(std::memory_order_acquire)) return with_native ? s : nullptr;
  if (p.named_by(fd)) return s;
  forget_set_number(fd, &p);
  return nullptr;
}

// What Linux's epoll calls accept as a file: an open fd that is not O_PATH
// (an O_PATH fd names a file without opening it; epoll gives EBADF).
bool fd_usable(int fd) {
  if (fd < 0 || is_own_fd(fd)) return false;  // ueq's own: no file of the program's
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
      close_own(made);
  }
  epoll_event e{};
  if (::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) != 0) return errno != EPERM;
  (void)::epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
  return true;
}

namespace {
// The identity set, made at first use (under reg().mu); -1 if it cannot be.
// Not pollable()'s trial epoll fd: a trial ADD there is undone with a DEL,
// and a pair that appears for a moment in the identity set would pass a
// racing MOD's probe (see registry::identity_seq).
int identity_set() {
  int ident = reg().ident.load(std::memory_order_relaxed);
  if (ident < 0) {
    ident = hide_fd(k_epoll_create1(EPOLL_CLOEXEC));
    // release: the probe, which reads ident without the lock, finds it made.
    if (ident >= 0) reg().ident.store(ident, std::memory_order_release);
  }
  return ident;
}
}  // namespace

// Epoll fds are anonymous-inode files (no file type bits), like eventfd,
// timerfd and signalfd. A DEL with fd as the epoll fd tells them apart
// without side effects: EINVAL if it is no epoll fd (checked before the
// target is looked up in it); any other answer means it is one.
bool is_epoll_file(int fd, const struct stat& st) {
  if ((st.st_mode & S_IFMT) != 0) return false;
  const int probe = identity_set();
  if (probe < 0) return true;  // cannot ask: treat as one (left out of the identity set)
  return k_epoll_ctl(fd, EPOLL_CTL_DEL, probe, nullptr) == 0 || errno != EINVAL;
}

bool is_stale(const impl::entry& e, int fd, const struct stat& st) {
  if (e.identified) return !identity_registered(fd);
  if (e.dev != st.st_dev || e.ino != st.st_ino) return true;
  return e.epoll_file && !is_epoll_file(fd, st);
}

// Removes one entry: its tap, its nesting edge, its place on the ready list
// and in the membership index. Under reg().mu and s.mu.
int register_identity(int fd) {
  const int ident = identity_set();
  if (ident < 0) return EMFILE;
  // No events: only EPOLLERR|EPOLLHUP, which the kernel always adds; the set
  // is never waited on, so a wakeup of the file costs it one mask test.
  epoll_event none{};
  return k_epoll_ctl(ident, EPOLL_CTL_ADD, fd, &none) == 0 ? 0 : errno;
}

// A MOD back to no events: 0 if the pair is there (and its events are
// the registration's again), ENOENT if not.
bool identity_registered(int fd) {
  const int ident = reg().ident.load(std::memory_order_acquire);
  epoll_event none{};
  return ident >= 0 && k_epoll_ctl(ident, EPOLL_CTL_MOD, fd, &none) == 0;
}

void release_identity_if_unused(int fd) {
  const int ident = reg().ident.load(std::memory_order_relaxed);
  if (ident >= 0 && !reg().members.contains(fd))
    (void)k_epoll_ctl(ident, EPOLL_CTL_DEL, fd, nullptr);
}

// A MOD of the registered pair with the caller's event: the kernel copies
// the event in first (EFAULT), then looks the pair up (ENOENT if the number
// names a file no set was given, EBADF if it names none). Its side effect,
// the pair's events and data in the identity set, is harmless (never waited
// on), save EPOLLWAKEUP, which would keep the system awake while the file
// is ready (with CAP_BLOCK_SUSPEND): the caller puts it back.
int identity_probe(int fd, const epoll_event* event, epoll_event& copy) {
  // acquire: pairs with register_identity()'s release store.
  const int ident = reg().ident.load(std::memory_order_acquire);
  if (ident < 0) return ENOENT;
  if (k_epoll_ctl(ident, EPOLL_CTL_MOD, fd, event) != 0) return errno;
  std::memcpy(&copy, event, sizeof copy);  // the kernel has just read it
  // Read once: the mask tested is the one used. (A program that rewrites
  // the event while the call runs may leave the pair with EPOLLWAKEUP; its
  // wakeup source then lives until the file or the pair goes.)
  if (copy.events & EPOLLWAKEUP) {
    epoll_event none{};
    (void)k_epoll_ctl(ident, EPOLL_CTL_MOD, fd, &none);
  }
  return 0;
}

void drop_entries_of(int fd, bool release) {
  if (auto m = reg().members.find(fd); m != reg().members.end()) {
    const auto holders = m->second;  // remove_entry edits the map
    for (impl* s : holders) {
      lock_guard<os_mutex> sg(s->mu);
      if (auto it = s->entries.find(fd); it != s->entries.end()) remove_entry(*s, it, release);
    }
  }
}

void remove_entry(impl& s, absl::node_hash_map<int, impl::entry>::iterator it, bool release) {
  impl::entry& e = it->second;
  const bool file = !e.child;
  if (e.tap.live()) (void)s.svc->remove(e.tap);
  if (e.child) {
    remove_edge(&s, e.child);
    e.child->sig.unlisten(s.q.get(), static_cast<std::uint32_t>(it->first));
  }
  s.dequeue(e);
  const int fd = it->first;
  s.entries.erase(it);
  auto m = reg().members.find(fd);
  if (m != reg().members.end()) {
    m->second.erase(&s);
    if (m->second.empty()) reg().members.erase(m);
  }
  if (file && release) release_identity_if_unused(fd);
  s.settle();
}

// Ends s's watch of the host poller's fd, if it has one (under reg().mu).
// `live`: s's number still names its epoll fd (else the watch went with
// that file, and the number may name another file now).
void unwatch_host(impl& s, bool live) {
  if (!s.watches_host.load(std::memory_order_relaxed)) return;
  if (live)
    (void)k_epoll_ctl(s.epfd.load(std::memory_order_relaxed), EPOLL_CTL_DEL, s.svc->pollable_fd(),
                      nullptr);
  s.watches_host.store(false, std::memory_order_relaxed);
  --reg().host_watchers;
}

void end_host_watches() {
  reg().host_holds_epoll = true;
  if (reg().host_watchers == 0) return;
  for (auto& [fd, set] : reg().by_fd)
    unwatch_host(epoll_access::of(*set));
}

// Whether entry e's number still names the file it was added for (a set of
// ours: asked while that set still holds its hidden eventfd; a file in the
// identity set: asked of it; else the inode is compared).
bool still_names(const impl::entry& e, int fd) ABSL_EXCLUSIVE_LOCKS_REQUIRED(reg().mu) {
  if (e.child) return e.child->named_by(fd);
  struct stat st;
  return ::fstat(fd, &st) == 0 && !is_stale(e, fd, st);
}

// Entry e as the kernel is to hold it: as the program gave it (a spent
// EPOLLONESHOT entry stays without events).
epoll_event native_event(const impl::entry& e) {
  epoll_event ev{};
  ev.data = e.data;
  ev.events = e.disabled ? e.events & (EPOLLONESHOT | EPOLLET | EPOLLWAKEUP) : e.events;
  return ev;
}

// Registers entry e (under number fd) in s's kernel epoll fd itself, and
// returns what it registered. An entry whose number now names another
// file is left out: Linux dropped it with its file.
epoll_event register_natively(impl& s, const impl::entry& e, int fd) {
  epoll_event ev = native_event(e);
  if (k_epoll_ctl(s.epfd.load(std::memory_order_relaxed), EPOLL_CTL_ADD, fd, &ev) != 0)
    log("hand-over: fd=%d could not move into epoll fd=%d: %s", fd, s.epfd.load(),
        std::strerror(errno));
  return ev;
}

namespace {
// An entry as materialize_all() copied it into the kernel, and an order
// that groups the copies by set (a total order on the pointers).
struct moved {
  impl* s;
  int fd;
  epoll_event ev;
};
struct by_set {
  static bool less(const impl* a, const impl* b) { return std::less<const impl*>{}(a, b); }
  bool operator()(const moved& a, const moved& b) const { return less(a.s, b.s); }
  bool operator()(const moved& a, const impl* s) const { return less(a.s, s); }
  bool operator()(const impl* s, const moved& a) const { return less(s, a.s); }
};
}  // namespace

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
// the kernel's depth limit could refuse it), then, under each set's lock,
// the kernel's copy of every entry a MOD or a harvest changed since it
// was registered is brought up to date, the set is marked native and its
// entries go. Waiters already inside wait() are woken
// (pending_signal::hold) and go on in the kernel.
//
// A set whose epoll fd's number no longer names it (closed behind ueq's
// back, the number reused) goes on under another of its numbers that
// does (as a close through ueq would leave it); with none, it is made
// native with nothing registered: its entries would land in whatever
// epoll fd holds the number now.
void materialize_all(const char* why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(reg().mu) {
  std::vector<impl*> sets, gone;
  for (auto& [fd, set] : reg().by_fd) {
    impl* p = &epoll_access::of(*set);
    // A set here is never dead: drop_set_number takes it out of by_fd
    // before it marks it dead, both under the registry lock we hold.
    if (p->native.load(std::memory_order_relaxed) || std::ranges::find(sets, p) != sets.end() ||
        std::ranges::find(gone, p) != gone.end())
      continue;
    bool live = p->named_by(p->epfd.load(std::memory_order_relaxed));
    for (auto n = p->numbers.begin(); !live && n != p->numbers.end(); ++n)
      if (p->named_by(*n)) {
        p->epfd.store(*n, std::memory_order_relaxed);
        live = true;
      }
    (live ? sets : gone).push_back(p);
  }
  // Entries that are sets wait for the third step; which of them still
  // name their set is asked now, while every set holds its hidden eventfd.
  struct nested {
    impl* s;
    const impl::entry* e;
    int fd;
  };
  std::vector<nested> later;
  // What each entry was registered as. The sets' locks are let go between
  // the steps, and two paths change an entry without the registry lock: a
  // MOD of a held entry (modify_registered) and a harvest that spends an
  // EPOLLONESHOT entry. The last step, under each set's lock, brings the
  // kernel's copy up to date with what they did meanwhile.
  std::vector<moved> copies;
  for (impl* s : sets) {
    lock_guard<os_mutex> g(s->mu);
    for (auto& [fd, e] : s->entries) {
      if (!still_names(e, fd)) continue;
      if (e.child)
        later.push_back({s, &e, fd});
      else
        copies.push_back({s, fd, register_natively(*s, e, fd)});
    }
  }
  for (impl* s : sets) {
    const int ep = s->epfd.load(std::memory_order_relaxed);
    unwatch_host(*s);
    (void)k_epoll_ctl(ep, EPOLL_CTL_DEL, s->sig.fd(), nullptr);
  }
  for (const nested& n : later) {
    lock_guard<os_mutex> g(n.s->mu);
    copies.push_back({n.s, n.fd, register_natively(*n.s, *n.e, n.fd)});
  }
  for (impl* s : gone)
    unwatch_host(*s, false);
  // relaxed: tests install the hook before they fork.
  if (auto* hook = test_hook_in_handover.load(std::memory_order_relaxed)) hook();
  std::stable_sort(copies.begin(), copies.end(), by_set{});
  sets.insert(sets.end(), gone.begin(), gone.end());
  for (impl* s : sets) {
    lock_guard<os_mutex> g(s->mu);
    const auto [first, last] = std::equal_range(copies.begin(), copies.end(), s, by_set{});
    for (auto c = first; c != last; ++c) {
      auto it = s->entries.find(c->fd);
      if (it == s->entries.end()) continue;
      epoll_event now = native_event(it->second);
      if (now.events != c->ev.events || now.data.u64 != c->ev.data.u64)
        (void)k_epoll_ctl(s->epfd.load(std::memory_order_relaxed), EPOLL_CTL_MOD, c->fd, &now);
    }
    // release: pairs with the acquire loads in wait() and ctl(); the
    // entries above are in the kernel before a caller passes through.
    // Stored before the entries go: their removal's settle() may clear
    // the signal, and a wait that then finds it quiet (its skip of the
    // harvest, without this lock) reads this store after the clear.
    s->native.store(true, std::memory_order_release);
    while (!s->entries.empty())
      remove_entry(*s, s->entries.begin());
    // Every kind of waiter wakes and goes on in the kernel.
    s->sig.hold();
  }
  if (!sets.empty()) log("%s: %zu sets handed to the kernel", why, sets.size());
}

// The process whose memory this is, as of its last fork() (the child's
// handler records its own): a process made without fork handlers (a
// vfork() child, a raw clone) reads its parent's number here. relaxed:
// written by the only thread of a new child, or before main.
std::atomic<pid_t> g_pid{::getpid()};
std::atomic<bool> g_maybe_inheritable{false};

// The hand-over before a new program starts (registry.hpp). Without the
// mark, no lock and no system call: until a set's number may lack
// FD_CLOEXEC an exec never waits here (an exec may come from a signal
// handler, and another thread may hold reg().mu while it waits for the
// allocator's lock that the handler interrupted). With it, the kernel is
// asked which numbers keep their file across an exec; a number closed
// behind ueq's back (EBADF) or naming another file now (named_by) counts
// as none.
//
// Every set is handed over, as at fork(), when one can be inherited: a
// kernel set cannot hold ueq's sets (the kernel would see their hidden
// files), nor be nested through the host poller without missing loops.
void hand_over_before_exec() noexcept {
  if (!g_maybe_inheritable.load(std::memory_order_relaxed)) return;
  if (::getpid() != g_pid.load(std::memory_order_relaxed)) return;
  tap_service::inside_ueq in;
  lock_guard<os_mutex> g(reg().mu);
  for (auto& [fd, set] : reg().by_fd) {
    impl& p = epoll_access::of(*set);
    if (p.native.load(std::memory_order_relaxed)) continue;
    const int flags = ::fcntl(fd, F_GETFD);
    if (flags >= 0 && !(flags & FD_CLOEXEC) && p.named_by(fd)) {
      materialize_all("exec");
      return;
    }
  }
}

// fork(): the registry lock is held from before the fork until after it,
// so no set is made or changed across it; in the child, where only the
// forking thread lives on, the locks are made anew (one another thread held
// would never be released). The lock spans three functions: no analysis.
void before_fork() noexcept ABSL_NO_THREAD_SAFETY_ANALYSIS {
  reg().mu.lock();
  tap_service::inside_ueq in;
  materialize_all("fork");
}
void after_fork_in_parent() noexcept ABSL_NO_THREAD_SAFETY_ANALYSIS {
  reg().mu.unlock();
}
void after_fork_in_child() noexcept ABSL_NO_THREAD_SAFETY_ANALYSIS {
  // The identity set is one kernel object for both processes: the child's
  // registrations must not edit the parent's.
  if (const int ident = reg().ident.exchange(-1, std::memory_order_relaxed); ident >= 0)
    (void)close_own(ident);
  reg().mu.unlock();  // held by this thread since before_fork
  new (&g_service_mu) os_mutex(lock_level::epoll_service);
  g_pid.store(::getpid(), std::memory_order_relaxed);
}
[[maybe_unused]] const bool g_fork_registered = on_fork(
    fork_layer::epoll,
    {.prepare = &before_fork, .parent = &after_fork_in_parent, .child = &after_fork_in_child});

// The entries of other sets that hold `s` (under any number), before it
// goes: each points at it. A close through ueq has dropped those under the
// closed number already; a number closed behind ueq's back, or a set
// reached under a dup'ed number, leaves them. Each holder's lock is taken
// alone (sets' locks do not nest).
static void drop_holders_of(impl& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(reg().mu) {
  auto pit = reg().parents.find(&s);
  if (pit == reg().parents.end()) return;
  std::vector<impl*> holders;
  for (const auto& [parent, n] : pit->second)
    holders.push_back(parent);
  for (impl* p : holders) {
    lock_guard<os_mutex> pg(p->mu);
    std::vector<int> fds;
    for (const auto& [fd, e] : p->entries)
      if (e.child == &s) fds.push_back(fd);
    for (int fd : fds)
      if (auto it = p->entries.find(fd); it != p->entries.end()) remove_entry(*p, it);
  }
}

// The entries of s go and every later ctl on it fails (under reg().mu).
static void tear_down(impl& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(reg().mu) {
  lock_guard<os_mutex> sg(s.mu);
  if (s.dead) return;  // the closer and the last wait may both get here
  while (!s.entries.empty())
    remove_entry(s, s.entries.begin());
  s.dead = true;
}

// The set's number `it` leaves the registry (`live`: it still names the
// set, being closed through ueq; else the kernel has handed it out again).
// With its last number the set leaves its parents and the host watch, and
// its entries go, unless waits sleep in it: then the last of them to
// return tears it down (leave_wait), as Linux's waiter holds the file.
// Under reg().mu; `dying` keeps the set alive until the caller has
// released the lock.
void drop_set_number(absl::flat_hash_map<int, std::shared_ptr<epoll_set>>::iterator it,
                     std::shared_ptr<epoll_set>& dying, bool live)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(reg().mu) {
  const int fd = it->first;
  dying = std::move(it->second);
  reg().by_fd.erase(it);
  bump_numbers();
  impl& s = epoll_access::of(*dying);
  std::erase(s.numbers, fd);
  if (!s.numbers.empty()) {
    // dup'ed numbers keep the set alive; make sure we write to an open one.
    s.epfd.store(s.numbers.front(), std::memory_order_relaxed);
    dying.reset();  // the registry still holds it under the other numbers
    return;
  }
  // A native set holds no entries (and its lock may have been held by a
  // thread that did not survive a fork), and no set of ours holds it.
  if (s.native.load(std::memory_order_acquire)) return;
  drop_holders_of(s);
  unwatch_host(s, live);
  log("close epoll fd=%d", fd);
  // seq_cst store, then seq_cst load: the closer's half of the handshake
  // with the waits (set.hpp, at `sleepers`).
  s.unnamed.store(true, std::memory_order_seq_cst);
  if (s.sleepers.load(std::memory_order_seq_cst) > 0)
    log("epoll fd=%d: its entries stay until the waits in it return", fd);
  else
    tear_down(s);
}

bool enter_wait(impl& s) {
  // seq_cst RMW, then seq_cst load: the waits' half of the handshake
  // (set.hpp, at `sleepers`).
  s.sleepers.fetch_add(1, std::memory_order_seq_cst);
  if (!s.unnamed.load(std::memory_order_seq_cst)) return true;
  leave_wait(s);
  return false;
}

void leave_wait(impl& s) {
  if (s.sleepers.fetch_sub(1, std::memory_order_seq_cst) != 1 ||
      !s.unnamed.load(std::memory_order_seq_cst))
    return;
  tap_service::inside_ueq in;
  lock_guard<os_mutex> g(reg().mu);
  // A wait that entered since has read `unnamed` and is on its way out:
  // it tears down itself if it is the last (tear_down runs once).
  if (s.sleepers.load(std::memory_order_relaxed) == 0) tear_down(s);
}

// Runs for every fd closed through ueq (before the close): the fd leaves
// every set that holds it; an epoll fd's number leaves its set, and the set
// is torn down with its last number.
void on_fd_close(int fd, void*) {
  std::shared_ptr<epoll_set> dying;  // released after the locks
  lock_guard<os_mutex> g(reg().mu);
  drop_entries_of(fd);
  auto it = reg().by_fd.find(fd);
  if (it == reg().by_fd.end()) return;
  drop_set_number(it, dying, true);
}

// A number that no longer names the set recorded under it (its file was
// closed behind ueq's back and the number reused): that record only goes,
// if it is still there. Entries and taps under the number are left to the
// identity checks of ctl and of the tap service: the number may already
// name a new file, registered anew.
void forget_set_number(int fd, const impl* expected) {
  std::shared_ptr<epoll_set> dying;  // released after the lock
  lock_guard<os_mutex> g(reg().mu);
  auto it = reg().by_fd.find(fd);
  if (it == reg().by_fd.end() || &epoll_access::of(*it->second) != expected) return;
  log("fd=%d no longer names the set recorded under it; forgotten", fd);
  drop_set_number(it, dying, false);
}

// A new number for an open file: if the file is one of our sets, the number
// names the set too.
void register_dup(int oldfd, int newfd) {
  tap_service::inside_ueq in;
  lock_guard<os_mutex> g(reg().mu);
  auto it = reg().by_fd.find(oldfd);
  if (it == reg().by_fd.end()) return;
  auto set = it->second;
  reg().by_fd[newfd] = set;
  // relaxed: a hint (see hand_over_before_exec), for a number without
  // FD_CLOEXEC (dup, dup2, F_DUPFD, dup3 without O_CLOEXEC).
  if (!g_maybe_inheritable.load(std::memory_order_relaxed))
    if (const int fl = ::fcntl(newfd, F_GETFD); fl < 0 || !(fl & FD_CLOEXEC))
      g_maybe_inheritable.store(true, std::memory_order_relaxed);
  bump_numbers();
  epoll_access::of(*set).numbers.push_back(newfd);
}

// dup2/dup3: newfd, if open, is closed by the call: let ueq forget it first.
int dup_over(int oldfd, int newfd, int flags, bool is_dup2) {
  // Calls that make no new number get the kernel's answer, in its order
  // (dup3: flags, then the same number, then oldfd), with ueq's own
  // numbers answered for as numbers the program never opened.
  if (oldfd == newfd) {
    if (!is_dup2) return ::dup3(oldfd, newfd, flags);  // EINVAL, touching nothing
    oldfd = newfd = program_fd(oldfd);
  }
  oldfd = program_fd(oldfd);
  if (oldfd == newfd || (!is_dup2 && (flags & ~O_CLOEXEC)) || !fd_open(oldfd))
    return is_dup2 ? ::dup2(oldfd, newfd) : ::dup3(oldfd, newfd, flags);
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

}  // namespace ueq::epoll_internal

namespace ueq {

void epoll_internal::forget_before_close(int fd) {
  if (tap_service::existing())
    if (auto svc = service()) (*svc)->before_close(fd);
}

status epoll_close(int fd) {
  // Without a service there is nothing of ueq's to forget (and none is made
  // for a close: this may be ueq's own close while it makes the service).
  if (tap_service::existing())
    if (auto svc = service()) return (*svc)->close_fd(fd);  // runs on_fd_close, then closes
  // The kernel's close, not an interposed one (which would come back here).
  return ::syscall(SYS_close, fd) == 0 ? status{} : status(errno);
}

}  // namespace ueq
