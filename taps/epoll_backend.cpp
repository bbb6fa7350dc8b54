// The host-epoll backend: registrations edge-triggered and persistent, plus
// an eventfd (registered with a reserved key) to break a poll from another
// thread.
//
// One epoll instance can hold an fd once; a second registration of the same
// fd goes into a second instance ("lane"), and so on. Lanes beyond the first
// are nested, level-triggered, into lane 0, which is the one the poller
// waits on; a lane that becomes readable is drained without blocking. Lanes
// are created on demand and live as long as the backend.
//
// Locking: mu_ guards lane_of_ and the creation of lanes. The poller reads
// lanes_ without it: a lane's fd is stored (release) before the lane is
// registered in lane 0, so a poller that sees the lane's event and loads its
// fd (acquire) finds it. Lanes only ever get added.
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <absl/container/flat_hash_map.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <climits>
#include <mutex>
#include <new>

#include "ueq/runtime/fd.hpp"
#include "ueq/runtime/lock.hpp"
#include "ueq/taps/backend.hpp"
#include "wake_channel.hpp"

namespace ueq {
namespace {

constexpr std::uint64_t kWakeKey = ~std::uint64_t{0};
constexpr std::uint64_t kLaneKey = 0xffffffff00000000ull;  // | lane index
// An fd can be registered this many times (taps in that many sets or
// queues). Linux allows a file 500 wakeup paths of length two (file ->
// lane -> lane 0), so past about 500 lanes its EINVAL comes first; at the
// limit itself, ENOSPC. Fewer where the epoll facade's sets also watch
// lane 0 (each watcher is one more path per lane: epoll/ctl_wait.cpp, create).
constexpr int kMaxLanes = 512;

class epoll_backend final : public host_backend {
 public:
  explicit epoll_backend(int ep) {
    lanes_[0].store(ep, std::memory_order_relaxed);
    nlanes_ = 1;
  }
  ~epoll_backend() override {
    for (int i = 0; i < nlanes_; ++i)
      close_own(lane(i));
  }
  const char* name() const noexcept override { return "epoll"; }
  int pollable_fd() const noexcept override { return lanes_[0]; }

  status add(int fd, std::uint32_t events, std::uint64_t key) noexcept override {
    lock_guard<os_mutex> g(mu_);
    if (lane_of_.contains(key)) return status(EEXIST);
    for (int i = 0; i < kMaxLanes; ++i) {
      if (i == nlanes_)
        if (status s = add_lane_locked(); !s.ok()) return s;
      epoll_event e{};
      e.events = events | EPOLLET;
      e.data.u64 = key;
      if (::epoll_ctl(lane(i), EPOLL_CTL_ADD, fd, &e) == 0) {
        lane_of_[key] = i;
        return {};
      }
      if (errno != EEXIST) return status(errno);  // the fd is in this lane: try the next
    }
    return status(ENOSPC);
  }

  status modify(int fd, std::uint32_t events, std::uint64_t key) noexcept override {
    lock_guard<os_mutex> g(mu_);
    auto it = lane_of_.find(key);
    if (it == lane_of_.end()) return status(ENOENT);
    epoll_event e{};
    e.events = events | EPOLLET;
    e.data.u64 = key;
    return ::epoll_ctl(lane(it->second), EPOLL_CTL_MOD, fd, &e) == 0 ? status{} : status(errno);
  }

  status remove(int fd, std::uint64_t key) noexcept override {
    lock_guard<os_mutex> g(mu_);
    auto it = lane_of_.find(key);
    if (it == lane_of_.end()) return status(ENOENT);
    const int i = it->second;
    lane_of_.erase(it);
    return ::epoll_ctl(lane(i), EPOLL_CTL_DEL, fd, nullptr) == 0 ? status{} : status(errno);
  }

  // Events taken per system call: lane 0's per poll, a nested lane's per
  // drain (stack buffers; the caller's span may be larger or smaller).
  static constexpr std::size_t kLane0Batch = 128;
  static constexpr std::size_t kLaneBatch = 64;

  result<std::size_t> poll(std::span<host_event> out, mono_ns deadline,
                           const sigset_t* sigmask) noexcept override {
    epoll_event evs[kLane0Batch];
    const int max = static_cast<int>(std::min<std::size_t>(out.size(), kLane0Batch));
    if (max == 0) return errno_code(EINVAL);
    const int n = epoll_pwait_until(lane(0), evs, max, deadline, sigmask);
    if (n < 0) return errno_code(errno);
    // Two passes, so no host event is ever dropped. Lane 0's own events are
    // edge-triggered: one not handed out now would never be reported again.
    // They all fit, since n <= max <= out.size(). Nested lanes get the room
    // that is left; they are level-triggered in lane 0, so what does not fit
    // is reported again by the next poll. Each lane reported here took one
    // of the n host slots, so it gets at least one slot of output.
    std::size_t k = 0;
    bool lanes = false;
    for (int i = 0; i < n; ++i) {
      const std::uint64_t key = evs[i].data.u64;
      if (key == kWakeKey) {
        wake_.drained();
      } else if ((key & kLaneKey) == kLaneKey) {
        lanes = true;
      } else {
        out[k++] = {key, evs[i].events};
      }
    }
    for (int i = 0; lanes && i < n && k < out.size(); ++i) {
      const std::uint64_t key = evs[i].data.u64;
      if (key == kWakeKey || (key & kLaneKey) != kLaneKey) continue;
      const int which = static_cast<int>(key & 0xffff);
      epoll_event more[kLaneBatch];
      const int room = static_cast<int>(std::min<std::size_t>(out.size() - k, kLaneBatch));
      const int m = sys_epoll_wait_now(lane(which), more, room);  // fd.hpp
      for (int j = 0; j < m; ++j)
        out[k++] = {more[j].data.u64, more[j].events};
    }
    return k;
  }

  void wake() noexcept override { wake_.wake(); }
  detail::wake_channel& wake_channel() noexcept { return wake_; }

 private:
  // acquire: pairs with the release store in add_lane_locked().
  int lane(int i) const noexcept { return lanes_[i].load(std::memory_order_acquire); }

  status add_lane_locked() noexcept ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const int n = nlanes_;
    const int ep = hide_fd(::epoll_create1(EPOLL_CLOEXEC));
    if (ep < 0) return status(errno);
    // release: stored before the lane can produce an event in lane 0.
    lanes_[n].store(ep, std::memory_order_release);
    epoll_event e{};
    e.events = EPOLLIN;  // level-triggered: lane 0 reports it until drained
    e.data.u64 = kLaneKey | static_cast<std::uint64_t>(n);
    if (::epoll_ctl(lane(0), EPOLL_CTL_ADD, ep, &e) != 0) {
      const int err = errno;
      close_own(ep);
      lanes_[n].store(-1, std::memory_order_relaxed);
      return status(err);
    }
    nlanes_ = n + 1;
    return {};
  }

  std::array<std::atomic<int>, kMaxLanes> lanes_{};
  int nlanes_ ABSL_GUARDED_BY(mu_) = 0;  // (the destructor runs alone)
  detail::wake_channel wake_;
  os_mutex mu_{lock_level::backend};
  absl::flat_hash_map<std::uint64_t, int> lane_of_ ABSL_GUARDED_BY(mu_);  // key -> lane
};

}  // namespace

result<std::unique_ptr<host_backend>> make_epoll_backend() {
  // Moved to a high number so it does not shift the fd numbers the program
  // sees (so is the wake channel's eventfd).
  const int ep = hide_fd(::epoll_create1(EPOLL_CLOEXEC));
  if (ep < 0) return errno_code(errno);
  std::unique_ptr<epoll_backend> b(new (std::nothrow) epoll_backend(ep));
  if (!b) {
    close_own(ep);
    return errno_code(ENOMEM);
  }
  if (!b->wake_channel().ok()) return errno_code(b->wake_channel().error());
  epoll_event e{};
  e.events = EPOLLIN | EPOLLET;
  e.data.u64 = kWakeKey;
  if (::epoll_ctl(ep, EPOLL_CTL_ADD, b->wake_channel().fd(), &e) != 0) return errno_code(errno);
  return std::unique_ptr<host_backend>(std::move(b));
}

}  // namespace ueq
