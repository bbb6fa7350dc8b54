// The tap service: the fd table, the fan-out from host events to taps, and
// who polls.
//
// Locking (outermost first):
//   cb_mu_                 the close-callback list. Callbacks run without it.
//   fd_entry::mu           one per fd number: the fd's taps, its host
//                          registration (events, generation, file identity),
//                          and every tap's filter/data/live. Held while
//                          calling the backend for that fd and while posting
//                          that fd's events into queues, so that after
//                          remove() returns no event of the tap is posted.
//   event queue locks      taken inside post() (leaf locks).
// Nothing takes fd_entry::mu while holding a queue lock.
//
// The fd table is a chunked_table: entries live as long as the service, so a
// host event for any fd number can always be looked up safely.
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

#include "ueq/runtime/chunked_table.hpp"
#include "ueq/runtime/parker.hpp"
#include "ueq/runtime/sharded_counters.hpp"
#include "ueq/taps/tap.hpp"

namespace ueq {

namespace detail {
struct tap {
  int fd;
  event_queue_ptr queue;
  std::uint32_t id;
  std::uint32_t filter;  // guarded by the fd entry's mu
  std::uint64_t data;    // guarded by the fd entry's mu
  bool live = true;      // guarded by the fd entry's mu
};
}  // namespace detail

int tap_handle::fd() const noexcept {
  return t_ ? t_->fd : -1;
}
bool tap_handle::live() const noexcept {
  return t_ && t_->live;
}

namespace {

struct fd_entry {
  std::mutex mu;
  std::uint32_t gen = 0;          // changes whenever the registration is dropped
  std::uint32_t host_events = 0;  // registered union; 0 = not registered
  dev_t dev = 0;                  // identity of the file registered
  ino_t ino = 0;
  std::vector<std::shared_ptr<detail::tap>> taps;
};

std::uint64_t host_key(std::uint32_t gen, int fd) {
  return (std::uint64_t{gen} << 32) | static_cast<std::uint32_t>(fd);
}

}  // namespace

struct tap_service::impl {
  enum { kHostEvents, kPosts, kStale, kPolls, kCount };

  std::unique_ptr<host_backend> backend;
  chunked_table<fd_entry> table{host_max_fds()};
  std::atomic<bool> polling{false};

  std::mutex cb_mu;
  struct callback {
    std::uint64_t id;
    close_callback fn;
    void* ctx;
  };
  std::vector<callback> callbacks;  // guarded by cb_mu
  std::uint64_t next_cb = 1;        // guarded by cb_mu

  host_poller ops{};
  bool attached = false;  // guarded by attach_mu
  std::mutex attach_mu;
  std::thread poller;
  std::atomic<bool> stop_poller{false};
  sharded_counters<kCount, 8> stats;

  fd_entry* entry(int fd, bool create) { return table.get(fd, create); }

  // Brings the host registration in line with the taps (under e.mu): one
  // registration for every filter bit while the fd has any tap, none when
  // it has none. Registering all bits, not the union of the taps' filters,
  // means the host is never re-armed while taps exist: a re-arm (epoll MOD)
  // re-reports current readiness to every tap of the fd, which would hand
  // an edge-triggered tap an edge that never happened. Bits no tap wants
  // are dropped in dispatch.
  status sync_host(fd_entry& e, int fd) {
    if (e.taps.empty()) {
      if (e.host_events != 0) {
        (void)backend->remove(fd, host_key(e.gen, fd));  // ENOENT/EBADF: already gone
        ++e.gen;
        e.host_events = 0;
      }
      return {};
    }
    if (e.host_events != 0) return {};
    status s = backend->add(fd, kTapAllFilters, host_key(e.gen, fd));
    if (s.value() == EEXIST)  // a registration we lost track of: take it over
      s = backend->modify(fd, kTapAllFilters, host_key(e.gen, fd));
    if (!s) e.host_events = kTapAllFilters;
    return s;
  }

  // Readiness is evaluated when a tap is added or modified: probe the fd and
  // post what the tap asked for to that tap alone (under e.mu, like
  // dispatch, so it is ordered with the fd's other events).
  void fire_initial(const detail::tap& t) {
    pollfd p{t.fd, static_cast<short>(t.filter & 0xffff), 0};
    if (::poll(&p, 1, 0) != 1 || (p.revents & POLLNVAL)) return;
    const std::uint32_t bits = static_cast<std::uint32_t>(p.revents) & t.filter;
    if (bits && !t.queue->post(t.id, bits, t.data)) stats.add(kPosts);
  }

  // Drops every tap of the entry and its registration (under e.mu).
  void drop_all(fd_entry& e, int fd) {
    for (auto& t : e.taps)
      t->live = false;
    e.taps.clear();
    (void)sync_host(e, fd);
  }

  void dispatch(const host_event& ev) {
    const int fd = static_cast<int>(ev.key & 0xffffffffu);
    const std::uint32_t gen = static_cast<std::uint32_t>(ev.key >> 32);
    fd_entry* e = entry(fd, false);
    if (!e) {
      stats.add(kStale);
      return;
    }
    std::lock_guard<std::mutex> g(e->mu);
    if (e->gen != gen || e->host_events == 0) {
      stats.add(kStale);
      return;
    }
    std::uint64_t posts = 0;
    for (auto& t : e->taps) {
      const std::uint32_t bits = ev.events & t->filter;
      if (bits && !t->queue->post(t->id, bits, t->data)) ++posts;
    }
    if (posts) stats.add(kPosts, posts);
  }

  static void poll_hook(void* ctx, mono_ns deadline) noexcept {
    (void)static_cast<tap_service*>(ctx)->poll(deadline);
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
  std::unique_ptr<impl> p(new (std::nothrow) impl);
  if (!p || !p->table.ok()) return errno_code(ENOMEM);
  p->backend = std::move(b).value();
  std::unique_ptr<tap_service> s(new (std::nothrow) tap_service(std::move(p)));
  if (!s) return errno_code(ENOMEM);
  return s;
}

namespace {
// The process's default service. Created on first use and never destroyed
// (threads may still poll through it while static destructors run).
std::mutex g_default_mu;
std::atomic<tap_service*> g_default{nullptr};

result<tap_service*> default_service() {
  // acquire: pairs with the release store below.
  if (tap_service* s = g_default.load(std::memory_order_acquire)) return s;
  std::lock_guard<std::mutex> g(g_default_mu);
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

result<tap_handle> tap_service::add(const tap_spec& spec) {
  if (spec.fd < 0) return errno_code(EBADF);
  if (spec.filter == 0 || (spec.filter & ~kTapAllFilters) || !spec.queue) return errno_code(EINVAL);
  struct stat st;
  if (::fstat(spec.fd, &st) != 0) return errno_code(EBADF);
  if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) return errno_code(EPERM);
  fd_entry* e = p_->entry(spec.fd, true);
  if (!e) return errno_code(ENOMEM);
  auto t = std::make_shared<detail::tap>(
      detail::tap{spec.fd, spec.queue, spec.id, spec.filter, spec.data, true});
  std::lock_guard<std::mutex> g(e->mu);
  if (e->host_events != 0 && (e->dev != st.st_dev || e->ino != st.st_ino))
    p_->drop_all(*e, spec.fd);  // the number was closed behind our back and reused
  const bool fresh = e->host_events == 0;
  e->taps.push_back(t);
  if (status s = p_->sync_host(*e, spec.fd)) {
    e->taps.pop_back();
    t->live = false;
    return s.code();
  }
  // A fresh host registration reports current readiness by itself (to this,
  // the only tap); otherwise probe for this tap alone.
  if (!fresh) p_->fire_initial(*t);
  e->dev = st.st_dev;
  e->ino = st.st_ino;
  return tap_handle(std::move(t));
}

status tap_service::modify(const tap_handle& h, std::uint32_t filter, std::uint64_t data) {
  if (!h) return status(EINVAL);
  if (filter == 0 || (filter & ~kTapAllFilters)) return status(EINVAL);
  fd_entry* e = p_->entry(h.t_->fd, false);
  if (!e) return status(ENOENT);
  std::lock_guard<std::mutex> g(e->mu);
  if (!h.t_->live) return status(ENOENT);
  h.t_->filter = filter;
  h.t_->data = data;
  p_->fire_initial(*h.t_);
  return {};
}

status tap_service::remove(const tap_handle& h) {
  if (!h) return status(EINVAL);
  fd_entry* e = p_->entry(h.t_->fd, false);
  if (!e) return status(ENOENT);
  std::lock_guard<std::mutex> g(e->mu);
  if (!h.t_->live) return status(ENOENT);
  h.t_->live = false;
  std::erase(e->taps, h.t_);
  (void)p_->sync_host(*e, h.t_->fd);  // only deregisters: cannot fail usefully
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
    if (r.result) break;
    ++done;
  }
  return done;
}

void tap_service::forget_fd(int fd) {
  fd_entry* e = p_->entry(fd, false);
  if (!e) return;
  std::lock_guard<std::mutex> g(e->mu);
  p_->drop_all(*e, fd);
}

void tap_service::before_close(int fd) {
  std::vector<impl::callback> cbs;
  {
    std::lock_guard<std::mutex> g(p_->cb_mu);
    cbs = p_->callbacks;
  }
  for (auto& c : cbs)
    c.fn(fd, c.ctx);
  forget_fd(fd);
}

status tap_service::close_fd(int fd) {
  if (fd < 0 || ::fcntl(fd, F_GETFD) < 0) return status(EBADF);
  before_close(fd);
  return ::close(fd) == 0 ? status{} : status(errno);
}

std::uint64_t tap_service::add_close_callback(close_callback cb, void* ctx) {
  std::lock_guard<std::mutex> g(p_->cb_mu);
  p_->callbacks.push_back({p_->next_cb, cb, ctx});
  return p_->next_cb++;
}

void tap_service::remove_close_callback(std::uint64_t id) {
  std::lock_guard<std::mutex> g(p_->cb_mu);
  std::erase_if(p_->callbacks, [id](const impl::callback& c) { return c.id == id; });
}

result<std::size_t> tap_service::poll(mono_ns deadline, const sigset_t* sigmask) {
  // acquire: the previous poller's dispatching happened before ours.
  if (p_->polling.exchange(true, std::memory_order_acquire)) return std::size_t{0};
  host_event evs[256];
  auto n = p_->backend->poll(evs, deadline, sigmask);
  p_->stats.add(impl::kPolls);
  if (n) {
    p_->stats.add(impl::kHostEvents, *n);
    for (std::size_t i = 0; i < *n; ++i)
      p_->dispatch(evs[i]);
  }
  p_->polling.store(false, std::memory_order_release);
  return n;
}

void tap_service::wake() noexcept {
  p_->backend->wake();
}

void tap_service::attach_to_parkers() {
  std::lock_guard<std::mutex> g(p_->attach_mu);
  if (p_->attached || p_->poller.joinable()) return;
  p_->attached = true;
  set_host_poller(&p_->ops);
}

void tap_service::detach_from_parkers() {
  std::lock_guard<std::mutex> g(p_->attach_mu);
  if (!p_->attached) return;
  p_->attached = false;
  set_host_poller(nullptr);
}

status tap_service::start_poller_thread() {
  std::lock_guard<std::mutex> g(p_->attach_mu);
  if (p_->poller.joinable()) return status(EBUSY);
  if (p_->attached) {
    set_host_poller(nullptr);  // parked threads now only sleep
    p_->attached = false;
  }
  p_->stop_poller.store(false, std::memory_order_relaxed);
  try {
    p_->poller = std::thread([this] {
      // acquire: pairs with the release store in stop_poller_thread().
      while (!p_->stop_poller.load(std::memory_order_acquire))
        (void)poll(kNoDeadline);
    });
  } catch (const std::system_error& e) {
    return status(e.code().value());
  }
  return {};
}

void tap_service::stop_poller_thread() {
  std::thread t;
  {
    std::lock_guard<std::mutex> g(p_->attach_mu);
    if (!p_->poller.joinable()) return;
    p_->stop_poller.store(true, std::memory_order_release);
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
          p_->stats.read(impl::kStale), p_->stats.read(impl::kPolls)};
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
  if (!s) return fd >= 0 && ::close(fd) == 0 ? status{} : status(errno ? errno : EBADF);
  return (*s)->close_fd(fd);
}

}  // namespace ueq
