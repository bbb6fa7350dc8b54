// epoll_set: create, ctl (Linux's error order) and wait.
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>

#include "registry.hpp"
#include "ueq/ceq/evq/block_on.hpp"
#include "ueq/runtime/fd.hpp"
#include "ueq/runtime/fork.hpp"
#include "ueq/runtime/lock.hpp"
#include "ueq/runtime/parker.hpp"

namespace ueq {

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
      {.name = "epoll"});  // its post hook wakes the set's waiters (no notify policy)
  if (!q) return q.error();
  std::unique_ptr<impl> p(new (std::nothrow) impl);
  if (!p) return errno_code(ENOMEM);
  // The signal's eventfd first (then moved high), so the program's epoll
  // fd gets the number Linux would have given it.
  if (status s = p->sig.init(*svc); !s.ok()) return s.code();
  const int efd = k_epoll_create1(flags & EPOLL_CLOEXEC);
  if (efd < 0) return errno_code(errno);
  // The kernel gave us this number, so whatever ueq knew under it belongs to
  // a file closed behind its back.
  bool stale;
  {
    lock_guard<os_mutex> g(reg().mu);
    stale = reg().by_fd.contains(efd) || reg().members.contains(efd);
  }
  if (stale) forget_number(efd);
  // A level-triggered watch of the hidden eventfd (events pending in this
  // set); the host poller's fd is watched below, by the first sets.
  epoll_event watch{};
  watch.events = EPOLLIN;
  if (k_epoll_ctl(efd, EPOLL_CTL_ADD, p->sig.fd(), &watch) != 0) {
    const int e = errno;
    (void)sys_close(efd);
    return errno_code(e);
  }
  p->svc = *svc;
  p->fork_gen = fork_generation();
  p->q = *q;
  p->epfd.store(efd, std::memory_order_relaxed);
  p->numbers.push_back(efd);
  p->q->set_post_hook(&impl::post_hook, p.get());
  std::shared_ptr<epoll_set> set(new (std::nothrow) epoll_set(std::move(p)));
  if (!set) {
    (void)sys_close(efd);
    return errno_code(ENOMEM);
  }
  lock_guard<os_mutex> g(reg().mu);
  reg().by_fd[efd] = set;
  bump_numbers();
  // relaxed: a hint (see hand_over_before_exec).
  if (!(flags & EPOLL_CLOEXEC)) g_maybe_inheritable.store(true, std::memory_order_relaxed);
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
  if (reg().host_watchers < kHostWatchers && !reg().host_holds_epoll &&
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
  if (op == EPOLL_CTL_MOD && !p_->native.load(std::memory_order_acquire)) {
    bool done;
    status s = p_->modify_registered(fd, event, done);
    if (done) return s;
  }
  return ctl_full(*this, op, fd, event);
}

namespace epoll_internal {

// Whether a signal that `mask` lets through is pending: a ppoll of no fds
// with a zero timeout and the mask installed fails with EINTR (the handler
// has run) if so, as Linux's wait does when it begins with one pending.
bool signal_through(const sigset_t* mask) {
  timespec zero{};
  const int saved = errno;
  const bool hit = ::syscall(SYS_ppoll, nullptr, 0, &zero, mask, _NSIG / 8) < 0 && errno == EINTR;
  errno = saved;
  return hit;
}

status ctl_full(epoll_set& self, int op, int fd, const epoll_event* event) {
  impl& p = epoll_access::of(self);
  // A set handed to the kernel (at a fork, or before an exec): the kernel's
  // ctl. Checked again under the set's lock, which the hand-over takes: a
  // ctl that began before it must not edit the entries it has moved.
  auto native = [&] {
    return k_epoll_ctl(p.epfd.load(std::memory_order_relaxed), op, fd, event) == 0 ? status{}
                                                                                   : status(errno);
  };
  if (p.native.load(std::memory_order_acquire)) return native();
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
  if (target.get() == &self) return status(EINVAL);
  if (op != EPOLL_CTL_ADD && op != EPOLL_CTL_MOD && op != EPOLL_CTL_DEL) return status(EINVAL);
  if (has_event && (ev.events & EPOLLEXCLUSIVE)) {
    if (op == EPOLL_CTL_MOD) return status(EINVAL);
    if (target || (ev.events & ~kExclusiveOk)) return status(EINVAL);
  }
  ev.events |= EPOLLERR | EPOLLHUP;

  if (p.fork_gen != fork_generation()) return status(ENOSYS);
  // The registry lock first (nesting checks, membership), then ours.
  lock_guard<os_mutex> rg(reg().mu);
  // An ADD of a file registers its identity (registry::ident). If the pair
  // was new, every entry under the number is for a file closed behind
  // ueq's back (the pair of a file a set holds stays registered), and goes
  // as Linux dropped it with its file: even one on the same inode (every
  // eventfd, timerfd and epoll fd shares one), which fstat cannot tell
  // apart. Epoll files are left out: nesting them in the identity set
  // would count against the kernel's depth and path limits for the program.
  struct identity_guard {
    int fd = -1;  // registered by this call: released unless an entry holds it
    ~identity_guard() {
      if (fd >= 0) release_identity_if_unused(fd);
    }
  } identity;
  // The drops of an ADD keep the pair (registered for the entry it adds).
  const bool adding = op == EPOLL_CTL_ADD;
  const bool epoll_file = adding && !target && is_epoll_file(fd, st);
  int identity_rc = -1;  // register_identity's answer, if asked
  if (adding && !target && !epoll_file && !p.native.load(std::memory_order_acquire)) {
    // seq_cst increment to odd before the registration (a system call),
    // even again after the drops: modify_registered() reads it before its
    // probe and again under the set's lock, and takes the full path if it
    // was odd or has moved (see registry::identity_seq).
    reg().identity_seq.fetch_add(1, std::memory_order_seq_cst);
    identity_rc = register_identity(fd);
    if (identity_rc == 0) {
      identity.fd = fd;
      drop_entries_of(fd, /*release=*/false);
    }
    // release: the drops above happen before a probe that reads even.
    reg().identity_seq.fetch_add(1, std::memory_order_release);
  }
  lock_guard<os_mutex> g(p.mu);
  if (p.native.load(std::memory_order_acquire)) return native();
  if (p.dead) return status(EBADF);
  auto it = p.entries.find(fd);
  if (it != p.entries.end() && is_stale(it->second, fd, st)) {
    // The number was closed without ueq seeing it and now names another
    // file: Linux dropped that entry with the file, so do we.
    remove_entry(p, it, /*release=*/!adding);
    it = p.entries.end();
  }
  switch (op) {
    case EPOLL_CTL_ADD: {
      if (it != p.entries.end()) return status(EEXIST);
      impl* child = target ? &epoll_access::of(*target) : nullptr;
      // A set whose last number went since the lookup above (closed, or
      // found closed behind ueq's back, by another thread): its number no
      // longer names it, and an entry would outlive it (it is torn down
      // now, or when the waits in it return). numbers: guarded by
      // reg().mu, which we hold; empty exactly once that happened.
      if (child && child->numbers.empty()) return status(EBADF);
      if (child) {
        const int below = depth_below(child, &p);
        if (below == INT_MAX || depth_above(&p) + 1 + below > kMaxNests) return status(ELOOP);
      }
      tap_handle tap;
      if (!child) {
        if (epoll_file) end_host_watches();
        // An exclusive entry is registered exclusively with the host: one
        // event wakes one of the file's exclusive waiters (sets here, in
        // other processes, or kernel epoll sets), as Linux does.
        auto t = p.svc->add(
            {.fd = fd,
             .filter = tap_filter(ev.events) | ((ev.events & EPOLLEXCLUSIVE) ? kTapExclusive : 0),
             .queue = p.q,
             .id = static_cast<std::uint32_t>(fd)});
        if (!t) return status(t.error().value());
        tap = *t;
      }
      impl::entry& e = p.entries[fd];
      e.fd = fd;
      e.events = ev.events;
      e.data = ev.data;
      e.tap = tap;
      e.child = child;
      e.dev = st.st_dev;
      e.ino = st.st_ino;
      e.identified = identity_rc == 0 || identity_rc == EEXIST;
      e.epoll_file = epoll_file;
      e.keeps_posted = S_ISREG(st.st_mode);
      if (child) {
        add_edge(&p, child);
        child->sig.listen(p.q.get(), static_cast<std::uint32_t>(fd));
      }
      reg().members[fd].insert(&p);
      // Readiness is evaluated at ADD.
      if (impl::probe(e)) p.enqueue(e);
      p.settle();
      log("ctl ADD fd=%d events=%#x", fd, ev.events);
      return {};
    }
    case EPOLL_CTL_MOD: {
      if (it == p.entries.end()) return status(ENOENT);
      if (it->second.events & EPOLLEXCLUSIVE) return status(EINVAL);
      return p.modify(it->second, ev);
    }
    default:  // EPOLL_CTL_DEL
      if (it == p.entries.end()) return status(ENOENT);
      remove_entry(p, it);
      return {};
  }
}

}  // namespace epoll_internal

status epoll_set::impl::modify_registered(int fd, const epoll_event* event, bool& done) {
  tap_service::inside_ueq in;  // a handler's close meanwhile defers (tap.hpp)
  done = false;
  // acquire loads of identity_seq, before the probe and under our lock:
  // an ADD makes it odd before registering a new pair (a system call) and
  // even after dropping the stale entries. If our probe found that new
  // pair, the odd increment came before it (the kernel orders the two
  // calls on the identity set), so the second load sees it: the value
  // moved, or was odd at the first load. If both read the same even value,
  // any drop for the pair we found had finished: this set's entry under fd
  // is for the file the number names.
  const std::uint64_t seq = reg().identity_seq.load(std::memory_order_acquire);
  if (seq & 1) return {};  // the full path waits for the registration
  epoll_event ev;
  const int probe = identity_probe(fd, event, ev);
  done = probe == EFAULT;
  if (probe != 0) return done ? status(EFAULT) : status{};
  lock_guard<os_mutex> g(mu);
  if (reg().identity_seq.load(std::memory_order_acquire) != seq) return {};
  if (native.load(std::memory_order_acquire) || dead) return {};
  auto it = entries.find(fd);
  if (it == entries.end() || it->second.child || (it->second.events & EPOLLEXCLUSIVE)) return {};
  done = true;
  return modify(it->second, ev);
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
  // A host-poll hand-off this call took (standby()) and has not acted on:
  // whatever it returns, it passes it on unless it polled since.
  bool handed = false;
  struct at_return {
    impl& s;
    bool& handed;
    ~at_return() { s.pass_on(handed); }
  } pass{*this, handed};
  bool prepoll = true;  // see below
  // The last sleep that watched the host's fd ended because a host event
  // was ready (host & kHostReady) while another thread held the host poll
  // (busy): that thread is dispatching it, and until it has, the host's fd
  // stays readable. The next such sleep yields first, so the poller gets
  // the CPU rather than this thread spinning on the fd.
  int host = 0;
  bool busy = false;
  bool host_ok = true;  // false once the host's fd is closed or in error
  // A sleep below (ppoll_set_and_host, standby) has had the caller's mask
  // installed; a host poll may have too, but need not have slept (it may
  // find the set pending, or another thread polling): not counted.
  bool slept_masked = false;
  // Counted among the set's sleepers (enter_wait) until this call returns.
  struct sleeper {
    impl& s;
    bool in = false;
    ~sleeper() {
      if (in) leave_wait(s);
    }
  } sleeping{*this};
  for (bool checked = number < 0;;) {
    if (native.load(std::memory_order_acquire)) {
      // The kernel's wait may block for good: a hand-off goes on first.
      pass_on(handed);
      return native_wait(buf, limit, deadline, sigmask, sink, ctx);
    }
    if (fork_gen != fork_generation()) return errno_code(ENOSYS);
    // Dispatch host events that have not been taken yet (without blocking;
    // if another thread is dispatching, it posts for us), so that whatever
    // happened before this call is seen by it, as with Linux. A full batch
    // may have left more, which would otherwise reach only a later wait (and
    // an edge-triggered entry already reported by its ADD probe would be
    // reported twice). Not after a sleep in the host poll or in standby:
    // what woke us was a dispatch already made (by us, leading, or by
    // another), or a hand-off of the host poll, which we then take by
    // blocking in it (a poll here, released at once, would hand it off to
    // yet another waiter). A hand-off due when such a poll ends is ours to
    // pass, after the harvest (or to take by leading).
    for (int i = 0; prepoll && i < kMaxHostBatches; ++i) {
      bool polled, due = false;
      auto got = svc->poll(kImmediate, nullptr, polled, &due);
      handed = handed || due;
      busy = !polled;
      if (!got || *got < kHostBatchFull) break;
    }
    prepoll = false;
    // A wait that will not sleep, on an idle set: the harvest would find
    // nothing and settle nothing. Read-only (no lock, no change to the
    // signal), so it takes part in no handshake. Read after the signal:
    // the CEQ (a post that a settle() found between its clear and its
    // re-check is there by then: the clear read the post's raise), and
    // `native` (a fork's hand-over stores it before its removals' settle()
    // may clear the signal).
    if (deadline == kImmediate && sig.quiet() && q->empty() &&
        !native.load(std::memory_order_acquire))
      return 0;
    {
      // Not across the blocking below: a uthread may resume on another vcore.
      tap_service::inside_ueq in;
      lock_guard<os_mutex> g(mu);
      // Handed to the kernel since the check at the top (a fork, under
      // this lock, which emptied the entries): the next turn waits there.
      if (native.load(std::memory_order_relaxed)) continue;
      const int n = harvest(buf, limit, sink, ctx);
      if (n < 0) return errno_code(EFAULT);
      if (n > 0) return n;
    }
    if (deadline == kImmediate) return 0;
    const mono_ns now = monotonic_now();
    if (now >= deadline) {
      // Linux looks for a signal the caller's mask lets through before it
      // reports a timeout (any timeout but zero): a wait whose time ran out
      // before it slept with the mask takes such a signal now.
      if (sigmask && !slept_masked && signal_through(sigmask)) return errno_code(EINTR);
      return 0;
    }
    // Only here: a wait that finds events returns without a system call for
    // it, and one that blocks costs several anyway.
    if (!sleeping.in) {
      if (!enter_wait(*this)) return errno_code(EBADF);  // closed since the lookup
      sleeping.in = true;
    }
    if (!checked) {
      // Closed through ueq since this wait counted itself in: it keeps the
      // set, as Linux's waiter keeps the file.
      if (!named_by(number) && !unnamed.load(std::memory_order_seq_cst)) return errno_code(ESTALE);
      checked = true;
    }
    if (watches_host.load(std::memory_order_relaxed)) {
      // About to block in ueq: the program waits here, so this set no
      // longer needs the host watch (create()), and another may have it.
      tap_service::inside_ueq in;
      lock_guard<os_mutex> g(reg().mu);
      unwatch_host(*this);
    }
    // A uthread parks alone on the signal's queue, which every raise posts;
    // the idle vcores poll the host meanwhile. A post after our harvest
    // left its bit there, so nothing is missed. With a signal mask, the
    // sleeps below keep the mask atomic (at the price of holding the vcore).
    if (!sigmask && parks_as_uthread()) {
      pass_on(handed);  // the parkers poll the host now
      auto r = block_on({sig.uthread_queue()}, deadline);
      // ECANCELED: the set was handed to the kernel (pending_signal::hold,
      // the one closer of the queue; its close follows the release store of
      // native, and block_on read the close with acquire): the loop's next
      // turn waits there.
      if (!r && r.error() != std::errc::timed_out &&
          !(r.error() == std::errc::operation_canceled && native.load(std::memory_order_acquire)))
        return r.error();
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
    // channel (pending_signal's handshake).
    auto led = lead_host_poll(deadline, sigmask, handed);
    if (!led) {
      leave_unharvested(handed);
      return led.error();  // EINTR for a signal, as epoll_wait
    }
    if (*led == lead::polled) continue;
    if (*led == lead::others && !svc->has_poller_thread()) {
      // Parked threads poll the host, but only while one is parked: sleep
      // until this set or the host has something, then poll the host
      // ourselves (without blocking) and harvest. Every such waiter wakes.
      pass_on(handed);
      if ((host & kHostReady) && busy) ::sched_yield();
      if (status s = ppoll_set_and_host(deadline, sigmask, host_ok, host); !s.ok()) return s.code();
      slept_masked = true;
      host_ok = host_ok && !(host & kHostBroken);
      prepoll = true;
      continue;
    }
    busy = *led == lead::busy;
    // Not leading: wait in standby, for this set's bell or, if another
    // thread polls the host, for the role. A hand-off taken earlier that we
    // did not use goes on first (we sleep now, and may sleep past it).
    pass_on(handed);
    if ((host & kHostReady) && busy) ::sched_yield();
    slept_masked = true;  // whatever standby() returns: a signal is EINTR there
    if (status s = standby(deadline, sigmask, busy, handed, host_ok, host); !s.ok()) {
      leave_unharvested(handed);
      return s.code();  // EINTR for a signal, as epoll_wait
    }
    host_ok = host_ok && !(host & kHostBroken);
  }
}

}  // namespace ueq
