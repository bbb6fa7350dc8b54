// The runtime's own descriptors beside the program's (ueq/runtime/fd.hpp).
#include "ueq/runtime/fd.hpp"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace ueq {

namespace {
#if defined(__SANITIZE_THREAD__)
constexpr bool kViaLibc = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
constexpr bool kViaLibc = true;
#else
constexpr bool kViaLibc = false;
#endif
#else
constexpr bool kViaLibc = false;
#endif
}  // namespace

ssize_t sys_read(int fd, void* buf, std::size_t n) noexcept {
  if constexpr (kViaLibc) {
    const no_cancel nc;
    return ::read(fd, buf, n);
  }
  return ::syscall(SYS_read, fd, buf, n);
}
ssize_t sys_write(int fd, const void* buf, std::size_t n) noexcept {
  if constexpr (kViaLibc) {
    const no_cancel nc;
    return ::write(fd, buf, n);
  }
  return ::syscall(SYS_write, fd, buf, n);
}
int sys_close(int fd) noexcept {
  if constexpr (kViaLibc) {
    const no_cancel nc;
    return ::close(fd);
  }
  return static_cast<int>(::syscall(SYS_close, fd));
}
int sys_poll_now(pollfd* fds, nfds_t n) noexcept {
  const timespec zero{0, 0};
  return static_cast<int>(::syscall(SYS_ppoll, fds, n, &zero, nullptr, 0));
}
int sys_epoll_wait_now(int ep, epoll_event* ev, int max) noexcept {
  if constexpr (kViaLibc) {
    const no_cancel nc;
    return ::epoll_wait(ep, ev, max, 0);
  }
  return static_cast<int>(::syscall(SYS_epoll_pwait, ep, ev, max, 0, nullptr, 0));
}

std::size_t host_max_fds() noexcept {
  const no_cancel nc;  // stdio: cancellation points
  std::size_t n = std::size_t{1} << 20;
  if (FILE* f = std::fopen("/proc/sys/fs/nr_open", "re")) {
    unsigned long v = 0;
    if (std::fscanf(f, "%lu", &v) == 1 && v > 0) n = v;
    std::fclose(f);
  }
  return n;
}

namespace {

// The runtime's own descriptors, one bit per number: 1024 blocks of 2^20
// numbers (Linux's nr_open is at most 2^30), each made on first use and
// never freed (a close may ask during exit). hide_fd() puts its numbers
// near the soft fd limit, so a process uses one or two blocks (128 KiB
// each, zeroed by the kernel as they are touched). Bits are set by
// hide_fd() once the number is ours and cleared by close_own() before the
// kernel's close; readers need no ordering beyond the bit itself (relaxed):
// a number is ours from the moment the runtime made it until it closes it,
// and only the runtime closes it.
constexpr int kBlockShift = 20;
constexpr std::size_t kBlocks = 1024;
using own_block = std::atomic<std::uint64_t>;
std::atomic<own_block*> g_own[kBlocks];

own_block* own_word(int fd, bool make) noexcept {
  const auto b = static_cast<std::size_t>(fd) >> kBlockShift;
  if (fd < 0 || b >= kBlocks) return nullptr;
  // acquire: pairs with the release CAS below (the block is zeroed).
  own_block* words = g_own[b].load(std::memory_order_acquire);
  if (!words && make) {
    void* mem = std::calloc((std::size_t{1} << kBlockShift) / 64, sizeof(own_block));
    if (!mem) return nullptr;
    auto* fresh = static_cast<own_block*>(mem);  // all-zero atomics
    if (g_own[b].compare_exchange_strong(words, fresh, std::memory_order_acq_rel))
      words = fresh;
    else
      std::free(mem);  // another thread made it first: words is theirs
  }
  if (!words) return nullptr;
  return &words[(static_cast<std::size_t>(fd) & ((std::size_t{1} << kBlockShift) - 1)) / 64];
}

void mark_own(int fd, bool own) noexcept {
  own_block* w = own_word(fd, own);
  if (!w) return;
  const std::uint64_t bit = std::uint64_t{1} << (fd & 63);
  // relaxed: see g_own.
  if (own)
    w->fetch_or(bit, std::memory_order_relaxed);
  else
    w->fetch_and(~bit, std::memory_order_relaxed);
}

}  // namespace

bool is_own_fd(int fd) noexcept {
  const own_block* w = own_word(fd, false);
  // relaxed: see g_own.
  if (!w || !((w->load(std::memory_order_relaxed) >> (fd & 63)) & 1)) return false;
  // The record can outlive the file: a closefrom(), a raw close or a dup2()
  // by the program over the number closes it without close_own(). The file
  // itself says whether it is still ours: hide_fd() made this process its
  // owner (F_SETOWN, which only matters to a file with O_ASYNC, which ueq's
  // files never have), and a file the program opens has none. A stale
  // record is forgotten, so the program's file under the number is its own.
  if (::fcntl(fd, F_GETOWN) > 0) return true;
  mark_own(fd, false);
  return false;
}

int next_own_fd(int from) noexcept {
  constexpr std::size_t kWords = (std::size_t{1} << kBlockShift) / 64;
  if (from < 0) from = 0;
  for (auto b = static_cast<std::size_t>(from) >> kBlockShift; b < kBlocks; ++b) {
    const own_block* words = g_own[b].load(std::memory_order_acquire);  // as in own_word
    if (!words) continue;
    const std::size_t base = b << kBlockShift;
    const std::size_t start = static_cast<std::size_t>(from) > base ? from - base : 0;
    for (std::size_t w = start / 64; w < kWords; ++w) {
      std::uint64_t v = words[w].load(std::memory_order_relaxed);  // see g_own
      if (w == start / 64) v &= ~std::uint64_t{0} << (start % 64);
      if (v) return static_cast<int>(base + w * 64 + static_cast<std::size_t>(__builtin_ctzll(v)));
    }
  }
  return -1;
}

int close_own(int fd) noexcept {
  mark_own(fd, false);
  // sys_close: the system call, never an interposed close() (the epoll
  // facade's preload library, which has nothing to do for these), but
  // under ThreadSanitizer, where it is the C library's (see fd.hpp).
  return sys_close(fd);
}

int hide_fd(int fd) noexcept {
  if (fd < 0) return fd;
  int out = fd;
  rlimit rl;
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur >= 16) {
    // The top 256 numbers below the soft limit (the top quarter under a
    // limit below 1024), searched from their bottom.
    const rlim_t top = std::min<rlim_t>(256, rl.rlim_cur / 4);
    const long floor = static_cast<long>(rl.rlim_cur - top);
    if (fd < floor) {
      // The system call itself: never an interposed fcntl() (the epoll
      // facade's preload library counts F_DUPFD copies of its sets).
      const int high = static_cast<int>(::syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, floor));
      if (high >= 0) {
        (void)sys_close(fd);
        out = high;
      }
    }
  }
  (void)::fcntl(out, F_SETOWN, ::getpid());  // the mark is_own_fd() checks
  mark_own(out, true);
  return out;
}

int epoll_pwait_until(int ep, epoll_event* ev, int max, mono_ns deadline,
                      const sigset_t* mask) noexcept {
  timespec ts, *tsp = nullptr;
  long ms = -1;  // epoll_pwait's timeout
  if (deadline != kNoDeadline) {
    const mono_ns left = time_left(deadline);
    ts = to_timespec(left);
    tsp = &ts;
    ms = std::min<long>(INT_MAX, ts.tv_sec * 1000L + (ts.tv_nsec + 999999) / 1000000);
  }
  // No time left (an immediate poll): epoll_pwait's timeout of 0, which
  // every kernel has and which copies no timespec in. Else epoll_pwait2
  // for its nanoseconds, where the kernel has it.
  static std::atomic<bool> no_pwait2{false};
  if (ms != 0 && !no_pwait2.load(std::memory_order_relaxed)) {
    const long r = ::syscall(SYS_epoll_pwait2, ep, ev, max, tsp, mask, _NSIG / 8);
    if (r >= 0 || (errno != ENOSYS && errno != EPERM)) return static_cast<int>(r);
    no_pwait2.store(true, std::memory_order_relaxed);  // a hint only: relaxed
  }
  return static_cast<int>(
      ::syscall(SYS_epoll_pwait, ep, ev, max, static_cast<int>(ms), mask, _NSIG / 8));
}
}  // namespace ueq
